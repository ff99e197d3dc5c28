"""``ovsfab agent``: a long-running process that keeps attachments restored.

See :mod:`ovsfab.agent.loop` for the loop and docs/agent.md for operation.
"""
