//! Owner activity: interrupts taken by input devices (keyboard, mouse, touchpad) from
//! `/proc/interrupts`.

use std::path::Path;

/// Interrupts taken so far by input devices (keyboard, mouse, touchpad), summed over CPUs,
/// from a `/proc/interrupts` file; a change means someone touched the machine. Counts the
/// lines naming `i8042` (PS/2), a keyboard, mouse, touchpad or touchscreen, an (i2c-)HID
/// device, an input device, or a touchpad by its ACPI id (`ELAN…`, `SYNA…`, `ALPS…`);
/// virtio queues (`virtio2-input.0` is a network queue) do not count. `None` if the file is
/// unreadable or names no input device. USB keyboards and mice share their controller's
/// interrupt (`xhci_hcd`) with other USB devices, so they are not seen here.
pub fn input_interrupts(proc_interrupts: &Path) -> Option<u64> {
    parse_interrupts(&std::fs::read_to_string(proc_interrupts).ok()?)
}

fn parse_interrupts(text: &str) -> Option<u64> {
    let mut lines = text.lines();
    let cpus = lines
        .next()?
        .split_whitespace()
        .filter(|w| w.starts_with("CPU"))
        .count();
    let mut sum: Option<u64> = None;
    for line in lines {
        let Some((_, rest)) = line.split_once(':') else {
            continue;
        };
        let mut words = rest.split_whitespace().peekable();
        let mut count: u64 = 0;
        for _ in 0..cpus {
            match words.peek().and_then(|w| w.parse::<u64>().ok()) {
                Some(n) => {
                    count = count.saturating_add(n);
                    words.next();
                }
                None => break,
            }
        }
        if words.any(names_input_device) {
            sum = Some(sum.unwrap_or(0).saturating_add(count));
        }
    }
    sum
}

/// Whether one word of an interrupt's description names an input device.
fn names_input_device(word: &str) -> bool {
    let word = word.trim_matches(',');
    let lower = word.to_ascii_lowercase();
    if lower.starts_with("virtio") {
        return false;
    }
    // ACPI ids of i2c touchpads, e.g. "ELAN0712:00", "SYNA7DB5:01".
    let acpi_touchpad = ["ELAN", "SYNA", "ALPS"].iter().any(|p| {
        word.strip_prefix(p)
            .is_some_and(|rest| rest.chars().next().is_some_and(|c| c.is_ascii_hexdigit()))
    });
    acpi_touchpad
        || lower.split(['-', '_', '.', ':', '/']).any(|part| {
            matches!(
                part,
                "i8042"
                    | "keyboard"
                    | "kbd"
                    | "keyb"
                    | "mouse"
                    | "touchpad"
                    | "touchscreen"
                    | "hid"
                    | "input"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_input_interrupts() {
        let text = "\
           CPU0       CPU1       CPU2       CPU3
  0:         22          0          0          0   IO-APIC   2-edge      timer
  1:          9          3          0          0   IO-APIC   1-edge      i8042
  8:          0          0          0          1   IO-APIC   8-edge      rtc0
 12:        100         44          0          0   IO-APIC  12-edge      i8042
 16:          0          0          0          0   IO-APIC  16-fasteoi   i2c_designware.0, idma64.0
 38:          0      12057          0          0   PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0
 51:          0          0        700          0  amd_gpio    5  ELAN0712:00
 60:          0          0          0          5  PCI-MSI 1048576-edge      xhci_hcd
NMI:          0          0          0          0   Non-maskable interrupts
LOC:    1905879    1995797    1905879    1995797   Local timer interrupts
ERR:          0
";
        assert_eq!(parse_interrupts(text), Some(9 + 3 + 100 + 44 + 700));
        let server = "\
           CPU0       CPU1
 24:          1          0  IO-APIC   5-edge      ACPI:Ged
 34:        167          0 PCI-MSIX-0000:00:05.0   1-edge      virtio4-input
 38:          0      12057 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0
LOC:    1905879    1995797   Local timer interrupts
";
        assert_eq!(parse_interrupts(server), None);
        let hid =
            "           CPU0\n 77:   5   intel-gpio  95  i2c-hid\n 78:  2  gpio  3  gpio-keys\n";
        assert_eq!(parse_interrupts(hid), Some(5));

        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("interrupts");
        std::fs::write(&f, text).expect("write");
        assert_eq!(input_interrupts(&f), Some(856));
        assert_eq!(input_interrupts(&d.path().join("missing")), None);
        // The real file is readable on Linux (whatever it names).
        let _ = input_interrupts(Path::new("/proc/interrupts"));
    }
}
