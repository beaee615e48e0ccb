//! SASL (placeholder until merged)
