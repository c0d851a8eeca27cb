"""A small Django project for tests/e2e/test_django.py and conf/examples/django.conf."""
