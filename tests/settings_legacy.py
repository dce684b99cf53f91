"""The test settings, configured the Django 4.2 way: STATICFILES_STORAGE."""

from tests.settings import *  # noqa: F403

del STORAGES  # noqa: F821
STATICFILES_STORAGE = "freshstatic.storage.FreshStaticFilesStorage"
