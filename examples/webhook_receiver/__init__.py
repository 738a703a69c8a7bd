"""A receiver of hitl's ``approval.decided`` events: see receiver.py."""
