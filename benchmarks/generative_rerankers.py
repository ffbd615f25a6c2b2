"""Qwen3-Reranker speed and memory: rerankit vs sentence-transformers and the model card's code.

Random weights with the real shapes of Qwen3-Reranker-0.6B (28 layers, hidden 1024, vocabulary
151,669; the real tokenizer cannot be downloaded here, so a byte-level BPE is trained on the
corpus), the same (query, candidates) sets from ../shared/data/scifact (synthetic passages when
it is absent). Each system runs in its own process: pairs/second and peak RSS (and peak CUDA
memory on a GPU). Then rerankit's peak RSS for 100 and for 2,000 candidates on a scaled-down
model: it stays flat, because batches are bounded by a token budget. Run from the repository
root (a full-size run takes minutes per system on 2 CPU cores; ``--small`` is a quick check):

    python benchmarks/generative_rerankers.py [--small] [--queries 2] [--candidates 20]
        [--device cuda] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import DATA, CandidateSets, candidate_sets, model_factory, peak_rss_mib

PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
SYSTEMS = ("rerankit", "sentence-transformers", "model card")

# Qwen3-Reranker-0.6B's config.json; --small keeps the vocabulary (the card's full-vocabulary
# logits are what costs it memory) and shrinks the rest.
FULL_SHAPE = {
    "hidden_size": 1024,
    "intermediate_size": 3072,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
}
SMALL_SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
}
CHAT_TEMPLATE = (
    '{%- set query = messages | selectattr("role", "eq", "query") | map(attribute="content") '
    "| first -%}\n"
    '{%- set document = messages | selectattr("role", "eq", "document") '
    '| map(attribute="content") | first -%}\n'
    "{{- "
    + json.dumps(PREFIX + f"<Instruct>: {INSTRUCTION}\n<Query>: ")
    + " + query + "
    + json.dumps("\n<Document>: ")
    + " + document + "
    + json.dumps(SUFFIX)
    + " -}}"
)


def corpus_texts(limit: int) -> list[str]:
    """SciFact passages, else seeded synthetic ones of similar length."""
    if (DATA / "scifact" / "corpus.jsonl").exists():
        return model_factory.read_corpus_texts(DATA / "scifact", limit=limit)
    rng = random.Random(0)
    words = [
        "cell",
        "protein",
        "gene",
        "DNA",
        "repair",
        "immune",
        "response",
        "tumour",
        "patients",
        "risk",
        "study",
    ]
    return [" ".join(rng.choices(words, k=rng.randint(60, 300))) for _ in range(limit)]


def sets(n_queries: int, n_candidates: int) -> CandidateSets:
    if (DATA / "scifact" / "queries.jsonl").exists():
        return candidate_sets(n_queries, n_candidates)
    corpus = corpus_texts(5000)
    rng = random.Random(0)
    return [
        (f"query {i} about DNA repair?", rng.sample(corpus, n_candidates)) for i in range(n_queries)
    ]


def build_model(out: Path, *, small: bool) -> Path:
    """Qwen3ForCausalLM with random weights and a Qwen2-class BPE trained on the corpus."""
    import torch
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer, Qwen3Config, Qwen3ForCausalLM
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(PRETOKENIZE_REGEX, behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    texts = [*corpus_texts(5000), PREFIX, SUFFIX, INSTRUCTION, *(["yes", "no"] * 50)]
    backend.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=16_000,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    model = json.loads(backend.to_str())["model"]
    tokenizer = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=40960,
    )
    tokenizer.add_tokens([AddedToken(t, special=True) for t in specials[1:]])
    tokenizer.add_tokens(["<think>", "</think>"])
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=151_669,
        max_position_embeddings=40_960,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        **(SMALL_SHAPE if small else FULL_SHAPE),
    )
    Qwen3ForCausalLM(config).eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def card_scorer(folder: Path, device: str, dtype: Any, batch_size: int) -> Any:
    """The model card's code: padded batches in input order, full-vocabulary logits."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
    no, yes = tokenizer.convert_tokens_to_ids(["no", "yes"])
    prefix = tokenizer.encode(PREFIX, add_special_tokens=False)
    suffix = tokenizer.encode(SUFFIX, add_special_tokens=False)
    max_length = 8192

    def score(query: str, docs: list[str]) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(docs), batch_size):
            pairs = [
                f"<Instruct>: {INSTRUCTION}\n<Query>: {query}\n<Document>: {doc}"
                for doc in docs[start : start + batch_size]
            ]
            inputs = tokenizer(
                pairs,
                padding=False,
                truncation="longest_first",
                return_attention_mask=False,
                max_length=max_length - len(prefix) - len(suffix),
            )
            inputs["input_ids"] = [prefix + ids + suffix for ids in inputs["input_ids"]]
            padded = tokenizer.pad(inputs, padding=True, return_tensors="pt").to(device)
            with torch.no_grad():
                logits = model(**padded).logits[:, -1, :]
            pair = torch.stack([logits[:, no], logits[:, yes]], dim=1).float()
            scores += torch.nn.functional.log_softmax(pair, dim=1)[:, 1].exp().tolist()
        return scores

    return score


def probe(args: argparse.Namespace) -> None:
    """Child process: load one system, time it on the sets, print a JSON line."""
    import torch

    dtype = getattr(torch, args.dtype) if args.dtype else None
    work = sets(args.queries, args.candidates)
    if args.probe == "rerankit":
        from rerankit import Reranker

        rr = Reranker(
            str(args.model),
            backend="llm",
            family="qwen3",
            device=args.device,
            dtype=args.dtype,
            batch_size=args.batch_size,
            max_length=8192,
        )
        score: Any = rr.score
    elif args.probe == "sentence-transformers":
        from sentence_transformers import CrossEncoder

        ce = CrossEncoder(
            str(args.model), device=args.device, model_kwargs={"dtype": dtype or torch.float32}
        )
        score = lambda q, d: ce.predict([(q, t) for t in d], batch_size=args.batch_size)  # noqa: E731
    else:
        score = card_scorer(args.model, args.device, dtype or torch.float32, args.batch_size)
    score(work[0][0], work[0][1][:2])  # warm-up
    started = time.perf_counter()
    for query, docs in work:
        score(query, docs)
    elapsed = time.perf_counter() - started
    result = {
        "system": args.probe,
        "pairs_per_second": sum(len(d) for _, d in work) / elapsed,
        "peak_rss_mib": round(peak_rss_mib()),
    }
    if args.device.startswith("cuda"):
        result["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    print(json.dumps(result))


def run_probe(args: argparse.Namespace, system: str, **overrides: Any) -> dict[str, Any]:
    settings = {**vars(args), "probe": system, **overrides}
    command = [sys.executable, __file__]
    for key, value in settings.items():
        if value is None or value is False or key == "small":
            continue
        flag = "--" + key.replace("_", "-")
        command += [flag] if value is True else [flag, str(value)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="scaled-down model, a quick check")
    parser.add_argument("--queries", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 (default: rerankit's)")
    parser.add_argument("--memory-candidates", type=int, default=2000)
    parser.add_argument("--model", type=Path, help="a folder built by an earlier run")
    parser.add_argument("--probe", choices=SYSTEMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(args)
        return
    folder = args.model or build_model(
        Path(tempfile.mkdtemp()) / "qwen3-reranker", small=args.small
    )
    args.model = folder
    print(f"model: {'scaled-down' if args.small else 'Qwen3-Reranker-0.6B shapes'}, {folder}")
    print(f"{args.queries} queries x {args.candidates} candidates on {args.device}\n")
    results = [run_probe(args, system) for system in SYSTEMS]
    ours = results[0]
    print(f"{'system':<24}{'pairs/s':>10}{'rerankit x':>12}{'peak RSS MiB':>14}{'CUDA MiB':>10}")
    for row in results:
        print(
            f"{row['system']:<24}{row['pairs_per_second']:>10.2f}"
            f"{ours['pairs_per_second'] / row['pairs_per_second']:>11.2f}x"
            f"{row['peak_rss_mib']:>14}{row.get('peak_cuda_mib', '-'):>10}"
        )
    small = folder if args.small else build_model(Path(tempfile.mkdtemp()) / "small", small=True)
    memory = [
        run_probe(args, "rerankit", model=small, queries=1, candidates=n)
        for n in (100, args.memory_candidates)
    ]
    print(
        f"\nrerankit, scaled-down model: peak RSS {memory[0]['peak_rss_mib']} MiB for 100 "
        f"candidates, {memory[1]['peak_rss_mib']} MiB for {args.memory_candidates}"
    )


if __name__ == "__main__":
    main()
