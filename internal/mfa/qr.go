package mfa

import (
	"bytes"
	"image"
	"image/color"
	"image/png"

	"github.com/boombuler/barcode/qr"
)

const (
	// qrQuietZone is the blank margin, in modules, that the QR standard
	// requires around the symbol. Drawing it into the image keeps the code
	// scannable on a dark page or in dark mode.
	qrQuietZone = 4
	// qrTargetSize is roughly the PNG's side in pixels; modules are drawn
	// a whole number of pixels wide, so the image stays crisp.
	qrTargetSize = 264
	qrMinScale   = 4
)

// qrPNG renders uri as a QR code in a two-colour PNG.
//
// We encode with boombuler/barcode (the encoder pquerna/otp's Key.Image
// uses, already a dependency) but draw the modules ourselves: Key.Image
// scales to an exact pixel size, which blurs module edges or leaves no
// quiet zone, and returns an image rather than PNG bytes. skip2/go-qrcode
// would do the same job with one more dependency.
func qrPNG(uri string) ([]byte, error) {
	code, err := qr.Encode(uri, qr.M, qr.Auto)
	if err != nil {
		return nil, err
	}
	b := code.Bounds()
	n := b.Dx()
	scale := max(qrMinScale, qrTargetSize/(n+2*qrQuietZone))
	side := (n + 2*qrQuietZone) * scale
	// Palette index 0 is white, so the zeroed image starts blank.
	img := image.NewPaletted(image.Rect(0, 0, side, side), color.Palette{color.White, color.Black})
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			if !dark(code.At(b.Min.X+x, b.Min.Y+y)) {
				continue
			}
			x0, y0 := (x+qrQuietZone)*scale, (y+qrQuietZone)*scale
			for py := y0; py < y0+scale; py++ {
				row := img.Pix[py*img.Stride:]
				for px := x0; px < x0+scale; px++ {
					row[px] = 1
				}
			}
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func dark(c color.Color) bool {
	r, g, b, _ := c.RGBA()
	return r+g+b < 3*0x8000
}
