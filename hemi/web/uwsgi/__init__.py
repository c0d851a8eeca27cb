"""uwsgi: the sans-IO codec (``codec``) used by the uwsgi proxy."""
