"""Create the database and an admin user: ``python -m djangosite.setup_db USER PASSWORD``."""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangosite.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

call_command("migrate", verbosity=0, interactive=False)
get_user_model().objects.create_superuser(sys.argv[1], f"{sys.argv[1]}@example.com", sys.argv[2])
