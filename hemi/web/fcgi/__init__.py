"""FastCGI: the sans-IO codec (``codec``) used by the fcgi proxy."""
