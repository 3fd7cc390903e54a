//go:build openssl && cgo

package libcrypto

/*
#cgo LDFLAGS: -lcrypto
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

// idp_rsa_key parses a DER RSAPrivateKey (PKCS #1).
static EVP_PKEY *idp_rsa_key(const unsigned char *der, long len, unsigned long *err) {
	const unsigned char *p = der;
	EVP_PKEY *pkey = d2i_PrivateKey(EVP_PKEY_RSA, NULL, &p, len);
	if (pkey == NULL) {
		*err = ERR_get_error();
		ERR_clear_error();
	}
	return pkey;
}

// idp_rsa_sign_ctx makes a signing context for PKCS #1 v1.5 signatures
// of SHA-256 digests with pkey. Setting one up costs a fifth of a
// signature in OpenSSL 3 (algorithm fetches), so contexts are reused.
static EVP_PKEY_CTX *idp_rsa_sign_ctx(EVP_PKEY *pkey, unsigned long *err) {
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pkey, NULL);
	if (ctx == NULL
		|| EVP_PKEY_sign_init(ctx) <= 0
		|| EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0
		|| EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) <= 0) {
		*err = ERR_get_error();
		ERR_clear_error();
		EVP_PKEY_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

// idp_rsa_sign signs a SHA-256 digest. The error queue is per thread, so
// it is read and cleared here, in the same call, before the goroutine can
// move to another thread.
static int idp_rsa_sign(EVP_PKEY_CTX *ctx, const unsigned char *digest, size_t digest_len,
                        unsigned char *sig, size_t *sig_len, unsigned long *err) {
	if (EVP_PKEY_sign(ctx, sig, sig_len, digest, digest_len) <= 0) {
		*err = ERR_get_error();
		ERR_clear_error();
		return 0;
	}
	return 1;
}
*/
import "C"

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Enabled reports whether RSA signatures go through libcrypto: true in
// this build.
func Enabled() bool { return true }

// Version names the library that signs RS256 tokens, as libcrypto reports
// itself (the library loaded at run time, not the headers built against).
func Version() string { return C.GoString(C.OpenSSL_version(C.OPENSSL_VERSION)) }

// sslSigner holds the key as libcrypto's EVP_PKEY and the signing
// contexts not in use, all freed when the signer is collected (keys.Set
// replaces its signers when it reloads).
type sslSigner struct {
	pub rsa.PublicKey // the private half lives only in libcrypto's memory
	lib *sslKey
}

// sslKey is the C side of a signer. It must not point back to the
// sslSigner, or the cleanup that frees it would keep the signer alive.
type sslKey struct {
	pkey *C.EVP_PKEY
	// idle holds contexts between signatures; a context signs for one
	// goroutine at a time. A signature that finds none makes one, and one
	// returned to a full channel is freed, so the number kept follows the
	// concurrency.
	idle chan *C.EVP_PKEY_CTX
}

// idleContexts bounds the contexts kept per key: more than the cores, as a
// goroutine holds one only while it signs.
var idleContexts = 4 * runtime.GOMAXPROCS(0)

// NewRSASigner returns a signer of RS256 digests with key, by libcrypto in
// this build.
func NewRSASigner(key *rsa.PrivateKey) (crypto.Signer, error) {
	der := x509.MarshalPKCS1PrivateKey(key)
	defer clear(der)
	var code C.ulong
	pkey := C.idp_rsa_key((*C.uchar)(unsafe.Pointer(&der[0])), C.long(len(der)), &code)
	if pkey == nil {
		return nil, fmt.Errorf("libcrypto: load RSA key: %s", errorString(code))
	}
	lib := &sslKey{pkey: pkey, idle: make(chan *C.EVP_PKEY_CTX, idleContexts)}
	s := &sslSigner{pub: key.PublicKey, lib: lib}
	runtime.AddCleanup(s, (*sslKey).free, lib)
	return s, nil
}

// keysFreed counts keys whose C side was freed, for the tests.
var keysFreed atomic.Int64

func (k *sslKey) free() {
	for {
		select {
		case ctx := <-k.idle:
			C.EVP_PKEY_CTX_free(ctx)
		default:
			C.EVP_PKEY_free(k.pkey)
			keysFreed.Add(1)
			return
		}
	}
}

func (s *sslSigner) Public() crypto.PublicKey { return &s.pub }

// Sign signs a SHA-256 digest; rand is not used (PKCS #1 v1.5 signatures
// are deterministic, and libcrypto draws its blinding from its own
// generator).
func (s *sslSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if err := checkOptions(digest, opts); err != nil {
		return nil, err
	}
	defer runtime.KeepAlive(s) // the cleanup frees s.lib
	var ctx *C.EVP_PKEY_CTX
	var code C.ulong
	select {
	case ctx = <-s.lib.idle:
	default:
		if ctx = C.idp_rsa_sign_ctx(s.lib.pkey, &code); ctx == nil {
			return nil, fmt.Errorf("libcrypto: signing context: %s", errorString(code))
		}
	}
	sig := make([]byte, s.pub.Size())
	sigLen := C.size_t(len(sig))
	ok := C.idp_rsa_sign(ctx,
		(*C.uchar)(unsafe.Pointer(&digest[0])), C.size_t(len(digest)),
		(*C.uchar)(unsafe.Pointer(&sig[0])), &sigLen, &code)
	if ok != 1 {
		C.EVP_PKEY_CTX_free(ctx) // not trusted for another signature
		return nil, fmt.Errorf("libcrypto: sign: %s", errorString(code))
	}
	select {
	case s.lib.idle <- ctx:
	default:
		C.EVP_PKEY_CTX_free(ctx)
	}
	sig = sig[:sigLen]
	if err := rsa.VerifyPKCS1v15(&s.pub, crypto.SHA256, digest, sig); err != nil {
		return nil, errors.New("libcrypto: the signature does not verify; not used")
	}
	return sig, nil
}

func errorString(code C.ulong) string {
	if code == 0 {
		return "unknown error"
	}
	var buf [256]C.char
	C.ERR_error_string_n(code, &buf[0], C.size_t(len(buf)))
	return C.GoString(&buf[0])
}
