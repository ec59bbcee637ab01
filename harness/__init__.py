"""Local federations for the tests and the benchmark scripts (not part of the installed package).

- :mod:`harness.mosquitto`: a Mosquitto started on a free port with the repository's config
  and ACL, or with the mutual-TLS config ``privadx certs init`` writes.
- :mod:`harness.federation`: a gateway and edge agents (threads) of one federation on it.
- :mod:`harness.photos`: ordinary photographs (scikit-image's sample images), the inputs a
  medical model must not answer for.

Both need a checkout (they read ``deploy/mosquitto/``) and the ``mosquitto`` binary; a missing
binary raises :class:`harness.mosquitto.MissingPrerequisiteError`, which the test suite reports as
a skip outside CI and a failure under it.
"""
