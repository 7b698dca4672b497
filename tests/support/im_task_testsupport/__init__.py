"""The im-task project's own test support, shared by every package's tests and the conformance suite.

What users of im-task need in their tests is in :mod:`im_task.testing` and
its pytest plugin (``im_task_settings``, ``im_task_recorder``,
``im_task_immediate``, ``im_task_local_queue``); this package holds what only
the project's tests need:

- :mod:`~im_task_testsupport.sink`: where tasks record what they did (one shared, importable module);
- :mod:`~im_task_testsupport.raw_http`: a raw HTTP client (``http.client``) and the headers a queue sends;
- :mod:`~im_task_testsupport.wsgi_apps`: WSGI apps that record requests or measure concurrency, and task requests;
- :mod:`~im_task_testsupport.processes`: running Python in a child process that imports the core;
- :mod:`~im_task_testsupport.context`: what a running task knows of itself, as one dict;
- :mod:`~im_task_testsupport.proof`: signing a hand-made delivery as im-task's own queues do (trusted counts);
- :mod:`~im_task_testsupport.threads`: running one function in many threads at once;
- :mod:`~im_task_testsupport.endpoints`: endpoints added to the core's endpoint table in tests;
- :mod:`~im_task_testsupport.oidc`: real Google-style OIDC tokens, offline, and a certificate server;
- :mod:`~im_task_testsupport.fuzzing`: genuine envelopes to mutate, hostile requests, and the invariants;
- :mod:`~im_task_testsupport.cloudtasks_server`, :mod:`~im_task_testsupport.cloudtasks_transports`: a real
  in-process Cloud Tasks API server and transports pointed at it;
- :mod:`~im_task_testsupport.cloudtasks_emulator`, :mod:`~im_task_testsupport.datastore_emulator`: the Cloud
  Tasks and Datastore emulators on free ports;
- :mod:`~im_task_testsupport.faulty_transports`, :mod:`~im_task_testsupport.reusing_queue`: transports that fail
  as real clients do, and a queue that accepts reused names;
- :mod:`~im_task_testsupport.dead_tasks`, :mod:`~im_task_testsupport.retried_tasks`,
  :mod:`~im_task_testsupport.ndb_tasks`: task functions importable by name.

The repository's root ``conftest.py`` puts this directory (and each test
directory whose modules tasks import by name) on ``sys.path``; nothing else
sets ``sys.path`` up.
"""
