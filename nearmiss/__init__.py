"""nearmiss: find traffic near-miss incidents in dashcam footage."""
__version__ = "0.1.0"
