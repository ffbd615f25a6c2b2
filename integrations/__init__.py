"""Framework adapters (``rerankit.integrations.<framework>``): convert in, one core call, out."""
