/* In-process A/B of two builds of an int4 row kernel (bench/kernel_ab/run.sh
 * links them as rows_A and rows_B): both are called alternately in blocks of
 * ~20 ms for R rounds on the same weights and activations, timed by thread
 * CPU time, and their results are compared bit for bit. Alternating inside
 * one process is what made 5 % differences visible on the shared VM, whose
 * speed changes 2x within minutes.
 * Usage: kab ROWS COLS TOKENS X16 [ROUNDS]  (asym g64; X16 1 = re-ordered
 * codes, AVX-512 only; the AVX2 build passes LMP_KAB_AVX2=1 at compile time)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <math.h>
#include "quantize/q4.h"
#include "quantize/q4_internal.h"
void rows_A(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y);
void rows_B(const lmp_mat *w, const lmp_q4_act *a, int r0, int r1, float *y);
static double tcpu(void){struct timespec t;clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static int cmpd(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){
  int rows=atoi(argv[1]),cols=atoi(argv[2]),n=atoi(argv[3]),x16=argc>4?atoi(argv[4]):0, rounds=argc>5?atoi(argv[5]):200;
  int group=64,scheme=LMP_Q4_ASYM;
  size_t rb=lmp_q4_row_bytes(cols,group,scheme);
  float*w=malloc(sizeof(float)*rows*cols),*x=malloc(sizeof(float)*cols*n),*y=malloc(sizeof(float)*rows*n),*y2=malloc(sizeof(float)*rows*n);
  unsigned s=1; for(size_t i=0;i<(size_t)rows*cols;i++){s=s*1103515245+12345;w[i]=((s>>8)%2000-1000)/1000.f;}
  for(size_t i=0;i<(size_t)cols*n;i++){s=s*1103515245+12345;x[i]=((s>>8)%2000-1000)/1000.f;}
  uint8_t*q=aligned_alloc(64,(rb*rows+63)/64*64); lmp_diag d;
  lmp_q4_quantize(w,rows,cols,group,scheme,LMP_Q4_SEARCH,q,NULL,"w",&d);
  lmp_mat m; lmp_q4_mat_init(&m,rows,cols,group,scheme,q,&d);
  #ifdef LMP_KAB_AVX2
  lmp_q4_allow_avx512(0); (void)x16; /* PAIRED activations for the AVX2 kernel */
#else
  if(x16){lmp_q4_pack_x16(q,q,rows,cols,group,scheme); m.layout=LMP_Q4_LAYOUT_X16;}
#endif
  void*buf=malloc(lmp_q4_act_prep_bytes(&m,n)); const lmp_q4_act*a=lmp_q4_act_prep(&m,x,n,buf,1);
  rows_A(&m,a,0,rows,y); rows_B(&m,a,0,rows,y2);
  if(memcmp(y,y2,sizeof(float)*rows*n)) printf("RESULTS DIFFER\n");
  int inner= (int)(2e7/((double)rows*cols*n)); if(inner<1)inner=1;
  double *ta=malloc(sizeof(double)*rounds),*tb=malloc(sizeof(double)*rounds);
  for(int r=0;r<rounds;r++){
    double t0=tcpu(); for(int i=0;i<inner;i++) rows_A(&m,a,0,rows,y); double t1=tcpu();
    for(int i=0;i<inner;i++) rows_B(&m,a,0,rows,y2); double t2=tcpu();
    double u=1e9/((double)inner*rows*cols/64*n); ta[r]=(t1-t0)*u; tb[r]=(t2-t1)*u;}
  qsort(ta,rounds,sizeof(double),cmpd); qsort(tb,rounds,sizeof(double),cmpd);
  printf("[%d x %d] n=%d x16=%d  A: min %.3f p25 %.3f med %.3f   B: min %.3f p25 %.3f med %.3f  ns/64w/tok  B/A med %.3f\n",rows,cols,n,x16,ta[0],ta[rounds/4],ta[rounds/2],tb[0],tb[rounds/4],tb[rounds/2],tb[rounds/2]/ta[rounds/2]);
}
