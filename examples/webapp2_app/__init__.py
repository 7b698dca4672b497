"""The demo's webapp2 app; ``python examples/run_demo.py webapp2`` runs the shared scenarios against it."""
