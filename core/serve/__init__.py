"""``rerankit serve``: one reranking service for many applications, in the Jina/Cohere shape."""
