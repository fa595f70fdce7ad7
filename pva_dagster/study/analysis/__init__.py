"""Phase 2: SAEs (SAELens), the general-text corpus, latent scores and separation."""
