"""im-task for Django: the task endpoint, settings, system checks and transactional tasks.

Add ``"im_task_django"`` to ``INSTALLED_APPS``, mount the endpoint with
``path("", include("im_task_django.urls"))`` and put settings in
``IM_TASK = {...}``, with upper-case keys as in ``DATABASES`` (``{"SECRET": ...}``).
See :mod:`im_task_django.conf` for the keys.
"""

__version__ = "2.0.0"

__all__ = ["__version__"]
