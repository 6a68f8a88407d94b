//! Our own cases for each difference issue 16 found against BuildKit 0.24, one test per
//! behaviour, each built by both builders and compared.
