"""Command-line tools (``python -m ssljax.tools.<name>``) and the command behind ``main.py``.

Library modules never import from here: tools sit on top of the library (``train``,
``sharding``, ``data``), not inside it.
"""
