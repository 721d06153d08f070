//! ISO 4217 currency codes: money is integer minor units plus one of the codes in force (shared/API.md), so
//! a code that names no currency (`ZZZ`) is refused at the boundary and in configuration alike.
//!
//! The table is ISO 4217 list one (currencies and funds) as published by the maintenance agency, taken from
//! Debian's `iso-codes` and brought up to date with the amendments since: withdrawn HRK (Croatia adopted the
//! euro, 2023), ZWL (replaced by ZWG, 2024), SLL (redenominated to SLE), ANG (replaced by XCG, 2025) and BGN
//! (Bulgaria adopted the euro, 2026). `XTS` (reserved for testing) and `XXX` (no currency involved) are
//! codes but cannot price anything, so they are left out. Kept sorted: lookups are a binary search.

/// The active ISO 4217 alphabetic codes, sorted.
pub const ACTIVE_CODES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BHD",
    "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF",
    "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP", "CVE", "CZK",
    "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS",
    "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD",
    "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD",
    "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT",
    "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK",
    "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD",
    "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP",
    "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS",
    "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND", "VUV", "WST",
    "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG", "XDR", "XOF", "XPD", "XPF",
    "XPT", "XSU", "XUA", "YER", "ZAR", "ZMW", "ZWG",
];

/// Whether `code` is an active ISO 4217 code, exactly (three uppercase letters, no surrounding space).
pub fn is_active(code: &str) -> bool {
    ACTIVE_CODES.binary_search(&code).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_holds_three_uppercase_letters() {
        assert!(ACTIVE_CODES.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(
            ACTIVE_CODES
                .iter()
                .all(|code| code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()))
        );
    }

    #[test]
    fn currencies_in_force_pass_and_made_up_or_withdrawn_ones_do_not() {
        for code in [
            "EUR", "USD", "GBP", "JPY", "CHF", "SLE", "ZWG", "XCG", "VED",
        ] {
            assert!(is_active(code), "{code}");
        }
        for code in [
            "ZZZ", "eur", "EU", "EURO", " EUR", "HRK", "BGN", "ZWL", "XTS", "XXX", "",
        ] {
            assert!(!is_active(code), "{code}");
        }
    }
}
