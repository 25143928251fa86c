/* Scalar stand-ins for the AVX-512 intrinsics of quant_legacy_avx512.c,
 * quant_float_avx512.c, quant_x8_avx512.c, attn_kernels_avx512.c and swiglu_avx512.c, with the semantics of the Intel intrinsics guide,
 * for run.sh: it checks those kernels on a machine without AVX-512. Not
 * part of the build. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
typedef union { float f[16]; int32_t i[16]; uint32_t u[16]; uint8_t b[64]; int8_t sb[64]; uint16_t h[32]; double d[8]; uint64_t q[8]; __m128i x[4]; __m256i y[2]; } em512;
#define EI static inline
EI em512 em_z(void){ em512 r; memset(&r,0,sizeof r); return r; }
EI em512 em_mm512_setzero_si512(void){ return em_z(); }
EI em512 em_mm512_setzero_ps(void){ return em_z(); }
EI em512 em_mm512_castsi256_si512(__m256i a){ em512 r=em_z(); r.y[0]=a; return r; }
EI em512 em_mm512_zextsi256_si512(__m256i a){ em512 r=em_z(); r.y[0]=a; return r; }
EI em512 em_mm512_inserti64x4(em512 a, __m256i b, int imm){ a.y[imm&1]=b; return a; }
EI em512 em_mm512_shuffle_i64x2(em512 a, em512 b, int imm){ em512 r; r.x[0]=a.x[imm&3]; r.x[1]=a.x[(imm>>2)&3]; r.x[2]=b.x[(imm>>4)&3]; r.x[3]=b.x[(imm>>6)&3]; return r; }
EI em512 em_mm512_and_si512(em512 a, em512 b){ for(int j=0;j<8;j++) a.q[j]&=b.q[j]; return a; }
EI em512 em_mm512_xor_si512(em512 a, em512 b){ for(int j=0;j<8;j++) a.q[j]^=b.q[j]; return a; }
EI em512 em_mm512_set1_epi8(char c){ em512 r; memset(r.b,(unsigned char)c,64); return r; }
EI em512 em_mm512_set1_epi32(int c){ em512 r; for(int j=0;j<16;j++) r.i[j]=c; return r; }
EI em512 em_mm512_setr_epi32(int a0,int a1,int a2,int a3,int a4,int a5,int a6,int a7,int a8,int a9,int a10,int a11,int a12,int a13,int a14,int a15){
  em512 r; int v[16]={a0,a1,a2,a3,a4,a5,a6,a7,a8,a9,a10,a11,a12,a13,a14,a15}; memcpy(r.i,v,64); return r; }
EI em512 em_mm512_mask_add_epi8(em512 src, uint64_t k, em512 a, em512 b){ for(int j=0;j<64;j++) if((k>>j)&1) src.b[j]=(uint8_t)(a.b[j]+b.b[j]); return src; }
EI em512 em_mm512_broadcast_i32x4(__m128i a){ em512 r; for(int j=0;j<4;j++) r.x[j]=a; return r; }
EI em512 em_mm512_shuffle_epi8(em512 a, em512 b){ em512 r; for(int j=0;j<64;j++){ int l=j/16*16; r.b[j]= (b.b[j]&0x80)?0:a.b[l+(b.b[j]&15)]; } return r; }
EI em512 em_mm512_castps256_ps512(__m256 a){ em512 r=em_z(); memcpy(r.f,&a,32); return r; }
EI em512 em_mm512_zextps256_ps512(__m256 a){ em512 r=em_z(); memcpy(r.f,&a,32); return r; }
EI em512 em_mm512_cvtph_ps(__m256i a){ em512 r; uint16_t h[16]; memcpy(h,&a,32); for(int j=0;j<16;j++) r.f[j]=_cvtsh_ss(h[j]); return r; }
EI em512 em_mm512_castpd_ps(em512 a){ return a; }
EI em512 em_mm512_castsi512_ps(em512 a){ return a; }
EI em512 em_mm512_broadcastsd_pd(__m128d a){ em512 r; double d; memcpy(&d,&a,8); for(int j=0;j<8;j++) r.d[j]=d; return r; }
EI em512 em_mm512_add_epi32(em512 a, em512 b){ for(int j=0;j<16;j++) a.u[j]+=b.u[j]; return a; }
EI em512 em_mm512_sub_epi32(em512 a, em512 b){ for(int j=0;j<16;j++) a.u[j]-=b.u[j]; return a; }
EI em512 em_mm512_dpbusd_epi32(em512 s, em512 a, em512 b){ for(int j=0;j<16;j++){ int32_t t=0; for(int k=0;k<4;k++) t+=(int32_t)a.b[4*j+k]*(int32_t)b.sb[4*j+k]; s.u[j]+=(uint32_t)t; } return s; }
EI em512 em_mm512_add_ps(em512 a, em512 b){ for(int j=0;j<16;j++) a.f[j]+=b.f[j]; return a; }
EI em512 em_mm512_broadcast_f32x4(__m128 a){ em512 r; for(int j=0;j<4;j++) memcpy(r.f+4*j,&a,16); return r; }
EI __m128 em_mm512_castps512_ps128(em512 a){ __m128 r; memcpy(&r,a.f,16); return r; }
EI void em_mm512_store_ps(void *p, em512 a){ memcpy(p,a.f,64); }
EI em512 em_mm512_sub_ps(em512 a, em512 b){ for(int j=0;j<16;j++) a.f[j]-=b.f[j]; return a; }
EI em512 em_mm512_min_ps(em512 a, em512 b){ for(int j=0;j<16;j++) a.f[j]=a.f[j]<b.f[j]?a.f[j]:b.f[j]; return a; }
EI em512 em_mm512_max_ps(em512 a, em512 b){ for(int j=0;j<16;j++) a.f[j]=a.f[j]>b.f[j]?a.f[j]:b.f[j]; return a; }
EI em512 em_mm512_roundscale_ps(em512 a, int imm){ (void)imm; for(int j=0;j<16;j++) a.f[j]=nearbyintf(a.f[j]); return a; }
EI em512 em_mm512_cvtps_epi32(em512 a){ for(int j=0;j<16;j++) a.i[j]=(int32_t)lrintf(a.f[j]); return a; }
EI uint16_t em_mm512_cmp_ps_mask(em512 a, em512 b, int imm){ uint16_t m=0; (void)imm; /* _CMP_NLT_UQ only */ for(int j=0;j<16;j++) if(!(a.f[j]<b.f[j])) m|=(uint16_t)(1u<<j); return m; }
EI em512 em_mm512_maskz_mov_ps(uint16_t m, em512 a){ for(int j=0;j<16;j++) if(!((m>>j)&1)) a.f[j]=0.0f; return a; }
EI em512 em_mm512_shuffle_f32x4(em512 a, em512 b, int imm){ em512 r; r.x[0]=a.x[imm&3]; r.x[1]=a.x[(imm>>2)&3]; r.x[2]=b.x[(imm>>4)&3]; r.x[3]=b.x[(imm>>6)&3]; return r; }
EI em512 em_mm512_shuffle_ps(em512 a, em512 b, int imm){ em512 r; for(int l=0;l<4;l++){ r.f[4*l]=a.f[4*l+(imm&3)]; r.f[4*l+1]=a.f[4*l+((imm>>2)&3)]; r.f[4*l+2]=b.f[4*l+((imm>>4)&3)]; r.f[4*l+3]=b.f[4*l+((imm>>6)&3)]; } return r; }
EI em512 em_mm512_div_ps(em512 a, em512 b){ for(int j=0;j<16;j++) a.f[j]/=b.f[j]; return a; }
EI em512 em_mm512_mul_ps(em512 a, em512 b){ for(int j=0;j<16;j++) a.f[j]*=b.f[j]; return a; }
EI em512 em_mm512_fmadd_ps(em512 a, em512 b, em512 c){ for(int j=0;j<16;j++) c.f[j]=fmaf(a.f[j],b.f[j],c.f[j]); return c; }
EI em512 em_mm512_cvtepi32_ps(em512 a){ for(int j=0;j<16;j++) a.f[j]=(float)a.i[j]; return a; }
EI em512 em_mm512_permutexvar_ps(em512 idx, em512 a){ em512 r; for(int j=0;j<16;j++) r.f[j]=a.f[idx.i[j]&15]; return r; }
EI void em_mm512_storeu_ps(void *p, em512 a){ memcpy(p,a.f,64); }
EI void em_mm512_mask_storeu_ps(void *p, uint16_t m, em512 a){ for(int j=0;j<16;j++) if((m>>j)&1) ((float*)p)[j]=a.f[j]; }
EI float em_mm512_reduce_max_ps(em512 a){ float m=a.f[0]; for(int j=1;j<16;j++) m=a.f[j]>m?a.f[j]:m; return m; }
EI float em_mm512_reduce_add_ps(em512 a){ float t[8]; for(int j=0;j<8;j++) t[j]=a.f[j]+a.f[j+8]; for(int j=0;j<4;j++) t[j]+=t[j+4]; t[0]+=t[2]; t[1]+=t[3]; return t[0]+t[1]; }
EI em512 em_mm512_loadu_ps(const void *p){ em512 r; memcpy(r.f,p,64); return r; }
EI em512 em_mm512_maskz_loadu_ps(uint16_t m, const void *p){ em512 r=em_z(); for(int j=0;j<16;j++) if((m>>j)&1) r.f[j]=((const float*)p)[j]; return r; }
EI __m256i em_mm256_maskz_loadu_epi16(uint16_t m, const void *p){ uint16_t h[16]={0}; for(int j=0;j<16;j++) if((m>>j)&1) h[j]=((const uint16_t*)p)[j]; __m256i r; memcpy(&r,h,32); return r; }
EI em512 em_mm512_cvtepu16_epi32(__m256i a){ em512 r; uint16_t h[16]; memcpy(h,&a,32); for(int j=0;j<16;j++) r.u[j]=h[j]; return r; }
EI em512 em_mm512_slli_epi32(em512 a, int k){ for(int j=0;j<16;j++) a.u[j]<<=k; return a; }
EI em512 em_mm512_cvtepi8_epi32(__m128i a){ em512 r; int8_t v[16]; memcpy(v,&a,16); for(int j=0;j<16;j++) r.i[j]=v[j]; return r; }
EI em512 em_mm512_set1_ps(float f){ em512 r; for(int j=0;j<16;j++) r.f[j]=f; return r; }
/* quant_x8_avx512.c's */
EI em512 em_mm512_or_si512(em512 a, em512 b){ for(int j=0;j<8;j++) a.q[j]|=b.q[j]; return a; }
EI em512 em_mm512_abs_epi8(em512 a){ for(int j=0;j<64;j++) a.b[j]=(uint8_t)(a.sb[j]<0?-a.sb[j]:a.sb[j]); return a; }
EI uint64_t em_mm512_movepi8_mask(em512 a){ uint64_t k=0; for(int j=0;j<64;j++) k|=(uint64_t)(a.b[j]>>7)<<j; return k; }
EI em512 em_mm512_mask_sub_epi8(em512 src, uint64_t k, em512 a, em512 b){ for(int j=0;j<64;j++) if((k>>j)&1) src.b[j]=(uint8_t)(a.b[j]-b.b[j]); return src; }
EI em512 em_mm512_slli_epi16(em512 a, int k){ for(int j=0;j<32;j++) a.h[j]=(uint16_t)(k>15?0:a.h[j]<<k); return a; }
EI em512 em_mm512_srli_epi16(em512 a, int k){ for(int j=0;j<32;j++) a.h[j]=(uint16_t)(k>15?0:a.h[j]>>k); return a; }
EI em512 em_mm512_srai_epi32(em512 a, int k){ for(int j=0;j<16;j++) a.i[j]>>=(k>31?31:k); return a; }
EI em512 em_mm512_mullo_epi32(em512 a, em512 b){ for(int j=0;j<16;j++) a.u[j]*=b.u[j]; return a; }
EI em512 em_mm512_cvtepu8_epi32(__m128i a){ em512 r; uint8_t v[16]; memcpy(v,&a,16); for(int j=0;j<16;j++) r.i[j]=v[j]; return r; }
EI em512 em_mm512_cvtepi8_epi16(__m256i a){ em512 r; int8_t v[32]; memcpy(v,&a,32); for(int j=0;j<32;j++) r.h[j]=(uint16_t)(int16_t)v[j]; return r; }
EI em512 em_mm512_dpwssd_epi32(em512 s, em512 a, em512 b){ for(int j=0;j<16;j++){ int32_t t=(int32_t)(int16_t)a.h[2*j]*(int16_t)b.h[2*j]+(int32_t)(int16_t)a.h[2*j+1]*(int16_t)b.h[2*j+1]; s.u[j]+=(uint32_t)t; } return s; }
EI em512 em_mm512_fnmadd_ps(em512 a, em512 b, em512 c){ for(int j=0;j<16;j++) c.f[j]=fmaf(-a.f[j],b.f[j],c.f[j]); return c; }
EI em512 em_mm512_permutexvar_epi32(em512 idx, em512 a){ em512 r; for(int j=0;j<16;j++) r.i[j]=a.i[idx.i[j]&15]; return r; }
EI __m256i em_mm512_extracti64x4_epi64(em512 a, int imm){ return a.y[imm&1]; }
EI __m256i em_mm512_castsi512_si256(em512 a){ return a.y[0]; }
EI em512 em_mm512_loadu_si512(const void *p){ em512 r; memcpy(r.b,p,64); return r; }
