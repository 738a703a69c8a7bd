"""What proves a request may do what it asks: link tokens, webhook signatures, host allowlists.

Pure functions over bytes and strings, the standard library only (``hmac``,
``hashlib``): the functions import them on every cold start. It must never
import anything else of hitl.
"""
