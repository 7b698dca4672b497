"""A small Django project whose tasks show what im-task can run; ``python examples/run_demo.py django`` runs it.

It is also a project to play with: ``python examples/django_project/manage.py migrate`` and then
``python examples/django_project/manage.py runserver``; POST to ``/scenarios/<name>`` and watch the console.
"""
