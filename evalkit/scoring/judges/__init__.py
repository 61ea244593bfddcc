"""LLM-as-judge: user-owned judge specs (YAML + Jinja) graded by any OpenAI-compatible
endpoint, or by a local llama.cpp server evalkit starts itself.

Stages: spec (load and check) -> render (prompts with unforgeable delimiters) -> provider
(async calls, retries) -> parse (verdicts that fail loudly) -> run (per-example judgments
and metric values) -> calibrate (agreement with human labels). Heavy imports (openai,
llama_cpp) stay inside functions so `import evalkit` remains light.
"""
