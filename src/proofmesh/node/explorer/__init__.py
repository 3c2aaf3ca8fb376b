"""The web explorer every node serves at ``/``: JSON API (``api.py``) + a vanilla JS page (``static/``)."""
