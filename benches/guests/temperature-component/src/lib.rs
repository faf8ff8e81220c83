//! Guest for paths (a) and (b) of the end-to-end benchmark: a component
//! exporting `karmem:bench/temperature.analyze`, which gets the readings as a
//! canonical-ABI `list<reading>` and returns their average, max and min.
//! Path (b) is this same component after `karmem-bridge lower`.

wit_bindgen::generate!({ path: "../wit", world: "temperature-guest" });

use exports::karmem::bench::temperature::{Analysis, Guest, Reading};

struct Temperature;

impl Guest for Temperature {
    fn analyze(readings: Vec<Reading>) -> Analysis {
        let mut sum = 0.0f32;
        let mut max = f32::NEG_INFINITY;
        let mut min = f32::INFINITY;
        for reading in &readings {
            sum += reading.value;
            max = max.max(reading.value);
            min = min.min(reading.value);
        }
        let average = if readings.is_empty() { 0.0 } else { sum / readings.len() as f32 };
        Analysis { average, max, min }
    }
}

export!(Temperature);
