"""A small webapp2 app whose tasks show what im-task can run; ``python examples/run_demo.py webapp2`` runs it."""
