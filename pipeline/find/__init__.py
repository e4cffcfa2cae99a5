"""Find the known questions that a new question asks again: nearest neighbours of its
question vector in a FAISS index over a bank of known questions, re-ranked by a pair model.

A question's vector comes from the re-ranking bundle's text model: by default its TF-IDF row
(vocabulary words, idf weights) randomly projected to a few hundred dimensions, which keeps
TF-IDF cosines within a few hundredths (Johnson-Lindenstrauss) at a size HNSW can search; or
the TF-IDF-weighted mean of its word vectors. Vectors are L2-normalized, so the index searches
by cosine. On real Quora questions the TF-IDF vectors find a known duplicate among the 50
nearest far more often than the word-vector means do (docs/benchmarks.md). The re-ranking runs
through the bundle's own scoring code (per-question parts once per distinct question, the
per-pair part per candidate), exactly as `dupq-score` does.

    dupq-find --query "How do I learn Python?"
    dupq-find --input questions.csv --output matches.csv
    dupq-find --add more_questions.csv

Modules: `index` (the question index: vectors, FAISS, bank, build, add, save, load),
`search` (`Finder`: nearest questions, re-ranked), `evaluate` (recall of known duplicates),
`cli` (dupq-find).
"""
