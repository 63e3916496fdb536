"""The HTTP layer: the FastAPI app and its routes, the ASGI fast path of ``POST /predict``, error
answers, the prediction page.
"""
