"""Security groups at the edges: the host's packet filter (``nft``, ``iptables-restore``) and
the installation's store and audit log. The decisions are in ``certgate.secgroups``."""
