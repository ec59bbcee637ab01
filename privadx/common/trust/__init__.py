"""Identity and integrity: the federation's certificate authority, identities and signatures.

Light (only the ``cryptography`` package): shared by the gateway, the edge agent and
``privadx diagnose``.
"""
