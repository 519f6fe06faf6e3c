//! QR codes: a PNG for people scanning from a screen, and text for the
//! terminal.

use image::{ImageBuffer, Luma};
use qrcode::{Color, QrCode};

/// Pixels per QR module and modules of quiet zone around the code.
const SCALE: u32 = 8;
const QUIET: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("cannot encode QR: {0}")]
    Encode(#[from] qrcode::types::QrError),
    #[error("cannot write PNG: {0}")]
    Png(#[from] image::ImageError),
}

/// Renders `data` as a black-on-white PNG.
pub fn png(data: &str) -> Result<Vec<u8>, QrError> {
    let code = QrCode::new(data.as_bytes())?;
    let width = code.width() as u32;
    let colors = code.to_colors();
    let side = (width + 2 * QUIET) * SCALE;
    let img = ImageBuffer::from_fn(side, side, |x, y| {
        let (mx, my) = (x / SCALE, y / SCALE);
        let dark = mx >= QUIET
            && my >= QUIET
            && mx < QUIET + width
            && my < QUIET + width
            && colors[((my - QUIET) * width + (mx - QUIET)) as usize] == Color::Dark;
        Luma([if dark { 0u8 } else { 255u8 }])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// Renders `data` for a terminal, two modules per character cell.
pub fn console(data: &str) -> Result<String, QrError> {
    let code = QrCode::new(data.as_bytes())?;
    let width = code.width();
    let colors = code.to_colors();
    let dark = |x: isize, y: isize| -> bool {
        x >= 0
            && y >= 0
            && (x as usize) < width
            && (y as usize) < width
            && colors[y as usize * width + x as usize] == Color::Dark
    };
    let q = 2isize;
    let mut out = String::new();
    let mut y = -q;
    while y < width as isize + q {
        for x in -q..width as isize + q {
            // Light text on a dark terminal: print light where the code is light.
            out.push(match (dark(x, y), dark(x, y + 1)) {
                (false, false) => '█',
                (false, true) => '▀',
                (true, false) => '▄',
                (true, true) => ' ',
            });
        }
        out.push('\n');
        y += 2;
    }
    Ok(out)
}
