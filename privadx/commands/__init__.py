"""Subcommands of ``privadx``; each module offers ``register(subparsers)`` and ``run(args)``.

Modules here import only light code at the top; TensorFlow and TFF are imported inside
``run`` of the subcommands that need them.
"""
