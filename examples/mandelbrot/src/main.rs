//! Renders the Mandelbrot set as a grid of independent naac tasks and assembles a PNG.
//!
//! The image covers x ∈ [−2, 1], y ∈ [−1.5, 1.5] (top row at y = 1.5) with `WIDTH` × `WIDTH`
//! pixels, split into a `TILES` × `TILES` grid of square tiles of `WIDTH / TILES` pixels.
//!
//! * `mandelbrot TILE_X TILE_Y TILES WIDTH MAX_ITER` renders one tile (column `TILE_X`, row
//!   `TILE_Y`, counted from the top left). It writes the tile's raw 8-bit grayscale pixels,
//!   row-major, to `/out/tile.raw` (skipped with a note when there is no output directory,
//!   e.g. when run natively), and prints a header line `tile TILE_X TILE_Y SIZE` followed by
//!   one line with the same pixels hex-encoded.
//! * `mandelbrot reduce TILES WIDTH` reads all tiles' outputs from stdin, concatenated in any
//!   order, assembles the image, writes `/out/mandelbrot.png` (8-bit grayscale) and prints
//!   `wrote mandelbrot.png (WIDTHxWIDTH)`.
//!
//! The output directory is `/out`, or `$NAAC_OUT_DIR` when that variable is set.

use std::fs::File;
use std::io::{BufWriter, Read};

use naac_guest::args;
use naac_guest::kernels::mandelbrot_tile;
use naac_guest::{hex, out_path, unhex};

const X_MIN: f64 = -2.0;
const Y_MAX: f64 = 1.5;
const SPAN: f64 = 3.0;

fn main() {
    if args::optional(1, "tile x or \"reduce\"").as_deref() == Some("reduce") {
        let grid = Grid::new(args::arg(2, "tiles"), args::arg(3, "width"))
            .unwrap_or_else(|message| args::usage_error(&message));
        reduce(grid);
    } else {
        let tx: u32 = args::arg(1, "tile x");
        let ty: u32 = args::arg(2, "tile y");
        let grid = Grid::new(args::arg(3, "tiles"), args::arg(4, "width"))
            .unwrap_or_else(|message| args::usage_error(&message));
        let max_iter: u32 = args::arg(5, "max iterations");
        if tx >= grid.tiles || ty >= grid.tiles {
            args::usage_error(&format!(
                "tile ({tx}, {ty}) is outside the {0}x{0} grid",
                grid.tiles
            ));
        }
        render(grid, tx, ty, max_iter);
    }
}

/// Geometry of the tiled image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Grid {
    /// Tiles per side.
    tiles: u32,
    /// Image pixels per side.
    width: u32,
}

impl Grid {
    fn new(tiles: u32, width: u32) -> Result<Self, String> {
        if tiles == 0 || width == 0 || !width.is_multiple_of(tiles) {
            return Err(format!(
                "WIDTH ({width}) must be a positive multiple of TILES ({tiles})"
            ));
        }
        // Keeps every buffer comfortably inside a 32-bit address space.
        if width > 16_384 {
            return Err(format!("WIDTH ({width}) must be at most 16384"));
        }
        Ok(Self { tiles, width })
    }

    /// Pixels per tile side.
    fn size(self) -> u32 {
        self.width / self.tiles
    }

    /// Pixels of tile (tx, ty), row-major.
    fn render_tile(self, tx: u32, ty: u32, max_iter: u32) -> Vec<u8> {
        let size = self.size();
        let coord = |pixel: u32| SPAN * f64::from(pixel) / f64::from(self.width);
        mandelbrot_tile(
            X_MIN + coord(tx * size),
            Y_MAX - coord(ty * size),
            X_MIN + coord((tx + 1) * size),
            Y_MAX - coord((ty + 1) * size),
            size,
            size,
            max_iter,
        )
    }
}

fn render(grid: Grid, tx: u32, ty: u32, max_iter: u32) {
    let pixels = grid.render_tile(tx, ty, max_iter);
    let raw = out_path("tile.raw");
    if raw.parent().is_some_and(std::path::Path::is_dir) {
        if let Err(e) = std::fs::write(&raw, &pixels) {
            args::fail(&format!("writing {}: {e}", raw.display()));
        }
    } else {
        eprintln!("note: no output directory, not writing {}", raw.display());
    }
    println!("tile {tx} {ty} {}", grid.size());
    println!("{}", hex(&pixels));
}

fn reduce(grid: Grid) {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        args::fail(&format!("reading stdin: {e}"));
    }
    let image = assemble(grid, &input).unwrap_or_else(|message| args::fail(&message));
    let path = out_path("mandelbrot.png");
    if let Err(e) = write_png(&path, grid.width, &image) {
        args::fail(&format!("writing {}: {e}", path.display()));
    }
    println!("wrote mandelbrot.png ({0}x{0})", grid.width);
}

/// Places every tile of the tasks' concatenated output into a `width` × `width` image.
fn assemble(grid: Grid, input: &str) -> Result<Vec<u8>, String> {
    let size = grid.size() as usize;
    let width = grid.width as usize;
    let tiles = grid.tiles as usize;
    let mut image = vec![0u8; width * width];
    let mut seen = vec![false; tiles * tiles];
    let mut lines = input
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty());
    while let Some((number, header)) = lines.next() {
        let bad = |why: &str| format!("line {number}: {why}");
        let fields: Vec<&str> = header.split_whitespace().collect();
        let ["tile", tx, ty, tile_size] = fields[..] else {
            return Err(bad("expected a header `tile TILE_X TILE_Y SIZE`"));
        };
        let int = |text: &str| {
            text.parse::<usize>()
                .map_err(|_| bad(&format!("{text:?} is not a non-negative integer")))
        };
        let (tx, ty, tile_size) = (int(tx)?, int(ty)?, int(tile_size)?);
        if tx >= tiles || ty >= tiles {
            return Err(bad(&format!(
                "tile ({tx}, {ty}) is outside the {tiles}x{tiles} grid"
            )));
        }
        if tile_size != size {
            return Err(bad(&format!(
                "tile size {tile_size} does not match WIDTH / TILES = {size}"
            )));
        }
        if std::mem::replace(&mut seen[ty * tiles + tx], true) {
            return Err(bad(&format!("tile ({tx}, {ty}) appears twice")));
        }
        let Some((data_number, data)) = lines.next() else {
            return Err(bad("header without pixel data"));
        };
        let pixels = unhex(data)
            .filter(|p| p.len() == size * size)
            .ok_or_else(|| {
                format!(
                    "line {data_number}: expected {} hex digits of pixel data",
                    2 * size * size
                )
            })?;
        for (row, chunk) in pixels.chunks_exact(size).enumerate() {
            let at = (ty * size + row) * width + tx * size;
            image[at..at + size].copy_from_slice(chunk);
        }
    }
    let missing = seen.iter().filter(|&&s| !s).count();
    if missing > 0 {
        let first = seen.iter().position(|&s| !s).unwrap_or_default();
        return Err(format!(
            "{missing} of {} tiles missing, e.g. tile ({}, {})",
            tiles * tiles,
            first % tiles,
            first / tiles
        ));
    }
    Ok(image)
}

fn write_png(path: &std::path::Path, width: u32, image: &[u8]) -> Result<(), png::EncodingError> {
    let mut encoder = png::Encoder::new(BufWriter::new(File::create(path)?), width, width);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(image)?;
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_output(grid: Grid, tx: u32, ty: u32, max_iter: u32) -> String {
        let pixels = grid.render_tile(tx, ty, max_iter);
        format!("tile {tx} {ty} {}\n{}\n", grid.size(), hex(&pixels))
    }

    #[test]
    fn grid_validation() {
        assert!(Grid::new(8, 1024).is_ok());
        assert!(Grid::new(0, 1024).is_err());
        assert!(Grid::new(8, 0).is_err());
        assert!(Grid::new(3, 1024).is_err());
        assert!(Grid::new(1, 32_768).is_err());
    }

    #[test]
    fn tiles_assemble_into_the_whole_image() {
        let grid = Grid::new(4, 32).expect("valid grid");
        let mut input = String::new();
        // Any order works.
        for ty in (0..4).rev() {
            for tx in 0..4 {
                input.push_str(&task_output(grid, tx, ty, 50));
            }
        }
        let image = assemble(grid, &input).expect("complete input");
        let whole = Grid::new(1, 32).expect("valid grid").render_tile(0, 0, 50);
        assert_eq!(image, whole);
    }

    #[test]
    fn rejects_incomplete_or_inconsistent_input() {
        let grid = Grid::new(2, 8).expect("valid grid");
        let tile = task_output(grid, 1, 0, 10);
        let err = assemble(grid, &tile).expect_err("missing tiles");
        assert!(
            err.contains("3 of 4 tiles missing, e.g. tile (0, 0)"),
            "{err}"
        );
        let err = assemble(grid, &format!("{tile}{tile}")).expect_err("duplicate");
        assert!(
            err.starts_with("line 3: ") && err.contains("twice"),
            "{err}"
        );
        let err = assemble(grid, "tile 0 0 4\n").expect_err("no data");
        assert!(err.contains("without pixel data"), "{err}");
        let err = assemble(grid, "tile 0 0 4\nabcd\n").expect_err("short data");
        assert!(err.starts_with("line 2: "), "{err}");
        let err = assemble(grid, "tile 0 0 5\n").expect_err("wrong size");
        assert!(err.contains("does not match"), "{err}");
        let err = assemble(grid, "tile 2 0 4\n").expect_err("outside");
        assert!(err.contains("outside"), "{err}");
        let err = assemble(grid, "hello\n").expect_err("garbage");
        assert!(err.starts_with("line 1: "), "{err}");
    }

    #[test]
    fn png_encoding_round_trips() {
        let dir = std::env::temp_dir().join(format!("naac-mandelbrot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let path = dir.join("m.png");
        let image: Vec<u8> = (0..64u8).collect();
        write_png(&path, 8, &image).expect("encode");
        let decoder = png::Decoder::new(std::io::BufReader::new(
            File::open(&path).expect("open png"),
        ));
        let mut reader = decoder.read_info().expect("png header");
        let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
        let info = reader.next_frame(&mut buf).expect("png frame");
        assert_eq!((info.width, info.height), (8, 8));
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        assert_eq!(&buf[..info.buffer_size()], &image[..]);
        std::fs::remove_dir_all(&dir).expect("remove temp dir");
    }
}
