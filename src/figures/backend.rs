//! The drawing backend of the charts: plotters' bitmap backend for lines, areas and fills, with
//! its text drawn by [`super::text`], the figures' one text renderer (the attention figures of
//! `explain` draw with it directly). So every figure's labels come out the same, with no font
//! file and no system font.

use plotters::backend::BitMapBackend;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
};

use super::text;

/// [`BitMapBackend`] with text from the bitmap font.
pub struct Bitmap<'a>(pub BitMapBackend<'a>);

/// The integer scale of the bitmap font for a plotters font size in pixels (the font's cell is
/// 8 pixels high at scale 1).
pub fn scale(size: f64) -> u32 {
    ((size / text::CELL.1 as f64).round() as u32).max(1)
}

type Result<E> = std::result::Result<(), DrawingErrorKind<E>>;

impl<'a> DrawingBackend for Bitmap<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }
    fn ensure_prepared(&mut self) -> Result<Self::ErrorType> {
        self.0.ensure_prepared()
    }
    fn present(&mut self) -> Result<Self::ErrorType> {
        self.0.present()
    }
    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Result<Self::ErrorType> {
        self.0.draw_pixel(point, color)
    }
    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<Self::ErrorType> {
        self.0.draw_line(from, to, style)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<Self::ErrorType> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<Self::ErrorType> {
        self.0.draw_path(path, style)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<Self::ErrorType> {
        self.0.draw_circle(center, radius, style, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<Self::ErrorType> {
        self.0.fill_polygon(vert, style)
    }
    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<Self::ErrorType> {
        self.0.blit_bitmap(pos, size, src)
    }

    /// The text's box at the font's scale for `style`'s size, placed by its anchor and turned
    /// by its transform about `pos`, as plotters places a font's text.
    fn draw_text<T: BackendTextStyle>(
        &mut self,
        s: &str,
        style: &T,
        pos: BackendCoord,
    ) -> Result<Self::ErrorType> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let k = scale(style.size());
        let (w, h) = (text::width(s, k) as i32, (text::CELL.1 * k) as i32);
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0,
            HPos::Center => -w / 2,
            HPos::Right => -w,
        };
        let dy = match anchor.v_pos {
            VPos::Top => 0,
            VPos::Center => -h / 2,
            VPos::Bottom => -h,
        };
        let turn = style.transform();
        let mut result = Ok(());
        text::pixels(s, k, |x, y| {
            if result.is_ok() {
                let (x, y) = turn.transform(x as i32 + dx, y as i32 + dy);
                result = self.0.draw_pixel((pos.0 + x, pos.1 + y), color);
            }
        });
        result
    }

    fn estimate_text_size<T: BackendTextStyle>(
        &self,
        s: &str,
        style: &T,
    ) -> std::result::Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        let k = scale(style.size());
        Ok((text::width(s, k), text::CELL.1 * k))
    }
}
