/*
 * ICU's converters for the rescue image, as a stub: libxml2 (which libarchive
 * needs) links ICU's libicuuc for the encodings it has no converter of its own
 * for; libicuuc needs libstdc++ and libgcc_s and its converter tables live in
 * libicudata (30 MiB). Together 1.6 MB of the compressed image, for documents
 * kvmbox never reads: it reads UTF-8 XML (libvirt's), which libxml2 handles
 * itself, as it does UTF-16, ISO-8859-1 and ASCII. Here every converter fails
 * to open, so a document in another encoding fails to parse with libxml2's
 * "unsupported encoding" error; nothing else of ICU is called.
 *
 * Built by build.sh with -DICU_SUFFIX=_NN, the version suffix of ICU's symbols
 * in the libxml2 the image carries (ucnv_open_72).
 */
#include <stdint.h>

#ifndef ICU_SUFFIX
#error "build with -DICU_SUFFIX=_NN"
#endif
#define ICU_NAME2(name, suffix) name##suffix
#define ICU_NAME1(name, suffix) ICU_NAME2(name, suffix)
#define ICU(name) ICU_NAME1(name, ICU_SUFFIX)

typedef int UErrorCode;
typedef uint16_t UChar;
typedef int8_t UBool;
typedef struct UConverter UConverter;
enum { U_FILE_ACCESS_ERROR = 4, U_UNSUPPORTED_ERROR = 16 };

static void refuse(UErrorCode *err)
{
	if (err && *err <= 0)
		*err = U_UNSUPPORTED_ERROR;
}

UConverter *ICU(ucnv_open)(const char *name, UErrorCode *err);
UConverter *ICU(ucnv_open)(const char *name, UErrorCode *err)
{
	(void)name;
	if (err && *err <= 0)
		*err = U_FILE_ACCESS_ERROR; /* what ICU says without the converter's data */
	return 0;
}

void ICU(ucnv_close)(UConverter *cnv);
void ICU(ucnv_close)(UConverter *cnv)
{
	(void)cnv;
}

void ICU(ucnv_convertEx)(UConverter *to, UConverter *from, char **target, const char *target_limit,
			 const char **source, const char *source_limit, UChar *pivot_start, UChar **pivot_source,
			 UChar **pivot_target, const UChar *pivot_limit, UBool reset, UBool flush, UErrorCode *err);
void ICU(ucnv_convertEx)(UConverter *to, UConverter *from, char **target, const char *target_limit,
			 const char **source, const char *source_limit, UChar *pivot_start, UChar **pivot_source,
			 UChar **pivot_target, const UChar *pivot_limit, UBool reset, UBool flush, UErrorCode *err)
{
	(void)to, (void)from, (void)target, (void)target_limit, (void)source, (void)source_limit;
	(void)pivot_start, (void)pivot_source, (void)pivot_target, (void)pivot_limit, (void)reset, (void)flush;
	refuse(err);
}

/* The callbacks: libxml2 passes ICU's STOP callbacks to the setters. */
typedef void callback_fn(void);
void ICU(ucnv_setToUCallBack)(UConverter *cnv, callback_fn *fn, const void *ctx, callback_fn **old_fn,
			      const void **old_ctx, UErrorCode *err);
void ICU(ucnv_setToUCallBack)(UConverter *cnv, callback_fn *fn, const void *ctx, callback_fn **old_fn,
			      const void **old_ctx, UErrorCode *err)
{
	(void)cnv, (void)fn, (void)ctx, (void)old_fn, (void)old_ctx;
	refuse(err);
}
void ICU(ucnv_setFromUCallBack)(UConverter *cnv, callback_fn *fn, const void *ctx, callback_fn **old_fn,
				const void **old_ctx, UErrorCode *err);
void ICU(ucnv_setFromUCallBack)(UConverter *cnv, callback_fn *fn, const void *ctx, callback_fn **old_fn,
				const void **old_ctx, UErrorCode *err)
{
	(void)cnv, (void)fn, (void)ctx, (void)old_fn, (void)old_ctx;
	refuse(err);
}
void ICU(UCNV_TO_U_CALLBACK_STOP)(void);
void ICU(UCNV_TO_U_CALLBACK_STOP)(void)
{
}
void ICU(UCNV_FROM_U_CALLBACK_STOP)(void);
void ICU(UCNV_FROM_U_CALLBACK_STOP)(void)
{
}
