//! placeholder: filled by the import work
