"""``certgate web``: the read-only audit review site (HTTPS, mutual TLS or one-time links).

Layers, one concern each: ``terminal_text`` and ``search_index`` turn recordings into
searchable text; ``catalog`` reads sessions and events; ``reviewers`` decides who may look at
what; ``signin`` keeps one-time links and browser sessions; ``app`` is the Starlette shell
over them; ``server`` runs it under uvicorn with certgate's own TLS certificates.
"""
