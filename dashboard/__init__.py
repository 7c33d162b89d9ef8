"""The dataset dashboard's domain: framework-free, cloud-free.

Nothing in this package imports fastapi, starlette or modal (tests/test_layers.py
enforces it). The web transport lives in ``api/``, the cloud shell in ``modal_app.py``.
"""
