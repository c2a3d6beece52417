//! `keyrotor import-accounts FILE.csv`.
