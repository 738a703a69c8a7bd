"""What proves a request may do what it asks: link tokens, webhook signatures, host allowlists,
and the signed-in person's identity (IAP's assertion).

Pure functions over bytes and strings, the standard library only (``hmac``,
``hashlib``): the functions import them on every cold start. The one exception
is :mod:`~hitl.security.iap`, which checks ECDSA signatures with google-auth and
cryptography and is imported only where sign-in is on. It must never import
anything else of hitl.
"""
