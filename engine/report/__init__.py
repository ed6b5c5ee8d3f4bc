"""`python -m engine evaluate --cases CASES.json --out report/`: every engine of every case, one
report (docs/EVALUATE.md).

  cases.py     the case file: reading and checking it (no pixels)
  engines.py   the engines a case may name (one registry entry each) and how one clip is made:
               a job built for it and run through the job runner's own engine entry
  stills.py    a case's still, pokes, pins and regions at the evaluated resolution
  measures.py  the numbers of one case x engine (engine/metrics.py does the measuring)
  pictures.py  case picture, contact sheets, flow histograms
  document.py  index.md and results.json
  evaluate.py  the command: cases -> clips -> numbers and pictures -> report folder
"""
