"""The evidence store: where verified footage goes, how long it stays, who touched it.

Shared by the dock (which writes into it) and the evidence office (``bodycam-evidence``).
Imports common/ only; neither device/ nor dock/ nor simulator/.
"""
