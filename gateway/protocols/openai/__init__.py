"""The OpenAI protocol: Chat Completions, models and embeddings (:mod:`.adapter`) and the
Responses API (:mod:`.responses_adapter`), with their wire formats beside them."""
