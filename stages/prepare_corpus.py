"""Stage prepare_corpus: write datasets/corpus/{train,valid,test}.txt from the chosen corpus.

wordlm.corpus=sample generates it offline; wordlm.corpus=data reads data/ (the WikiText-2
archive that `dvc update data.dvc` fetches); wordlm.corpus=folder reads train.txt, valid.txt and
test.txt from the folder wordlm.folder names (a dep of the stage in dvc.yaml).
"""
import argparse

from _common import run_stage

from dlreport.params import load_params
from dlreport.wordlm.prepare import prepare_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data", help="the imported corpus (wordlm.corpus=data)")
    parser.add_argument("--out", default="datasets/corpus")
    parser.add_argument("--metrics", default="metrics/corpus.json")
    args = parser.parse_args()
    params = load_params(args.params, "wordlm.corpus", "wordlm.folder", "wordlm.data_md5", "wordlm.sample")
    stats = prepare_corpus(params["wordlm.corpus"], params["wordlm.data_md5"], params["wordlm.sample"], args.data,
                           args.out, args.metrics, folder=params["wordlm.folder"])
    print(f"corpus ({stats['source']}): {stats['train_tokens']:,} / {stats['valid_tokens']:,} / "
          f"{stats['test_tokens']:,} tokens (train/valid/test), vocabulary {stats['vocab_size']:,} -> {args.out}")


if __name__ == "__main__":
    run_stage(main)
