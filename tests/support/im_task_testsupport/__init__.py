"""The im-task project's own test support, shared by every package's tests and the conformance suite.

What users of im-task need in their tests is in :mod:`im_task.testing` and
its pytest plugin (``im_task_settings``, ``im_task_recorder``,
``im_task_immediate``, ``im_task_local_queue``); this package holds what only
the project's tests need:

- :mod:`~im_task_testsupport.sink`: where tasks record what they did (one shared, importable module);
- :mod:`~im_task_testsupport.raw_http`: a raw HTTP client (``http.client``) and the headers a queue sends;
- :mod:`~im_task_testsupport.wsgi_apps`: WSGI apps that record requests or measure concurrency, and task requests;
- :mod:`~im_task_testsupport.processes`: running Python in a child process that imports the core;
- :mod:`~im_task_testsupport.context`: what a running task knows of itself, as one dict.

The repository's root ``conftest.py`` puts this directory (and each test
directory whose modules tasks import by name) on ``sys.path``; nothing else
sets ``sys.path`` up.
"""
