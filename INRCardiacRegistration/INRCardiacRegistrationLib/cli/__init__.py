"""Layer 5, the ``inr-cardiac`` command line: one module per command, and the terminal pieces they share.
``python -m INRCardiacRegistrationLib.cli`` runs it (that is how the worker is started)."""
