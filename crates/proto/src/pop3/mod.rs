//! POP3 (placeholder until merged)
