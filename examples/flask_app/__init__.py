"""A small Flask app whose tasks show what im-task can run; ``python examples/run_demo.py flask`` runs it."""
