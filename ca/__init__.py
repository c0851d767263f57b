"""certgate's certificate authority as a library.

Keys, identity X.509 certificates, RFC 5755 attribute certificates, CRLs and
their verification. Nothing here imports from ``certgate``: the gateway, the CLI
and the store depend on this package, never the other way round.
"""
